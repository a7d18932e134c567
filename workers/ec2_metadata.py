"""This instance's private IPv4 address, from the EC2 instance metadata service (IMDSv2).

A host-networked container on an ECS/EC2 instance shares the instance's address, and the API
(in the fleet's VPC) reaches the worker's control endpoint there. The service's address can be
moved with AWS_EC2_METADATA_SERVICE_ENDPOINT, as for the AWS SDKs.
"""

import ipaddress
import os

import httpx

DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_SECONDS = 60


class MetadataUnavailable(Exception):
    """Not on EC2, metadata disabled, or an answer that is not an address."""


def private_ipv4(timeout: float = 2.0) -> str:
    endpoint = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", DEFAULT_ENDPOINT)
    try:
        with httpx.Client(base_url=endpoint, timeout=timeout, trust_env=False) as client:
            ttl = {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_SECONDS)}
            token = client.put("/latest/api/token", headers=ttl)
            token.raise_for_status()
            answer = client.get("/latest/meta-data/local-ipv4", headers={"X-aws-ec2-metadata-token": token.text})
            answer.raise_for_status()
        return str(ipaddress.IPv4Address(answer.text.strip()))
    except (httpx.HTTPError, ValueError) as exc:
        raise MetadataUnavailable(f"no private IPv4 address from {endpoint}: {exc}") from exc
