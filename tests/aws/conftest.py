"""Fixtures of every AWS test: fresh boto3 clients (autouse), a plugin host, its ``aws`` provider."""

from tests.support.aws import aws_fixtures

_fresh_clients, host, aws = aws_fixtures()
