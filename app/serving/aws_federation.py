"""AWS credentials for a Google identity, with no AWS key anywhere.

A worker pod runs as a Google service account (GKE workload identity). It asks the metadata
server for a Google-signed ID token, and AWS STS exchanges that token for short-lived credentials
of the results-writer role, whose trust policy names the service account's unique id
(``infra/cross_cloud.py``). botocore refreshes them before they expire.
"""

from __future__ import annotations

import logging
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.session import get_session

from app.serving.observability import AWS_CREDENTIALS_FAILED

log = logging.getLogger("rerank.aws")
METADATA_URL = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity"


class FederationError(RuntimeError):
    """No Google token to exchange, or STS refused it (the message says which)."""


def google_id_token(audience: str, metadata_url: str = METADATA_URL, timeout: float = 5.0) -> str:
    query = urllib.parse.urlencode({"audience": audience, "format": "full"})
    request = urllib.request.Request(f"{metadata_url}?{query}", headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read().decode().strip()
    except OSError as exc:
        raise FederationError(f"no Google ID token from the metadata server ({metadata_url}): {exc}") from None


def assume_role_with_google(
    role_arn: str, session_name: str, region: str, sts_endpoint: str | None = None, metadata_url: str = METADATA_URL
) -> dict[str, Any]:
    """One exchange: the Google ID token for the role's temporary credentials. A failure is logged
    with AWS_CREDENTIALS_FAILED (an alert counts it) and raised as FederationError."""
    try:
        token = google_id_token(audience=role_arn, metadata_url=metadata_url)
        # AssumeRoleWithWebIdentity is an unsigned call: the token is the credential.
        sts = boto3.client(
            "sts", region_name=region, endpoint_url=sts_endpoint, config=Config(signature_version=UNSIGNED)
        )
        try:
            creds = sts.assume_role_with_web_identity(
                RoleArn=role_arn, RoleSessionName=session_name, WebIdentityToken=token, DurationSeconds=3600
            )["Credentials"]
        except Exception as exc:  # botocore's ClientError and endpoint errors alike
            raise FederationError(f"STS refused the Google token for {role_arn}: {exc}") from None
    except FederationError as exc:
        log.error("%s role=%s %s", AWS_CREDENTIALS_FAILED, role_arn, exc)
        raise
    expiry = creds["Expiration"]
    if isinstance(expiry, datetime) and expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    return {
        "access_key": creds["AccessKeyId"],
        "secret_key": creds["SecretAccessKey"],
        "token": creds["SessionToken"],
        "expiry_time": expiry.isoformat() if isinstance(expiry, datetime) else str(expiry),
    }


def federated_session(
    role_arn: str, session_name: str, region: str, sts_endpoint: str | None = None, metadata_url: str = METADATA_URL
) -> boto3.Session:
    """A boto3 session whose credentials come from (and are renewed through) the Google identity."""

    def refresh() -> dict[str, Any]:
        return assume_role_with_google(role_arn, session_name, region, sts_endpoint, metadata_url)

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=refresh(), refresh_using=refresh, method="google-web-identity"
    )
    botocore_session = get_session()
    botocore_session._credentials = credentials  # botocore has no public setter for refreshable credentials
    botocore_session.set_config_variable("region", region)
    return boto3.Session(botocore_session=botocore_session)
