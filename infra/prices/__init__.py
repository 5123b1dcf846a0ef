"""The price table behind ``rerank infra cost`` and the catalog readers that refresh it.

``table``: read, check and write ``infra/prices.toml`` (every price says how it was obtained).
``gcp``: Google's Cloud Billing Catalog (``CloudCatalogClient.list_skus``) to prices.
``aws``: AWS's Price List (the boto3 ``pricing`` client's ``get_products``) to prices.
``refresh``: ``rerank infra prices refresh``: the table re-read from both catalogs.
"""
