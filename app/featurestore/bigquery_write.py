"""How the streaming ingest writes the offline store's BigQuery tables, named once: the Beam sink
(``beam_transforms.WriteOfflineBigQuery``) writes with it and ``rerank infra cost`` prices it.

Legacy streaming inserts (``tabledata.insertAll``) are billed per byte inserted, "with individual
rows calculated using a 1 KB minimum size" (cloud.google.com/bigquery/pricing, Storage pricing).
"""

from __future__ import annotations

from typing import Final

WRITE_METHOD: Final = "STREAMING_INSERTS"
MIN_BILLED_ROW_BYTES: Final = 1024
