"""AWS failures become one-line ``AwsError`` values carrying the AWS error code, classified in
one place (``bake.aws.errors``), so no service or builder reads botocore's responses itself."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from bake.aws.errors import call
from bake.errors import AwsError


def _ssm():
    return boto3.session.Session(region_name="us-east-1", aws_access_key_id="x",
                                 aws_secret_access_key="x").client("ssm")


@pytest.mark.parametrize("code, throttled", [
    ("ThrottlingException", True),
    ("TooManyRequestsException", True),
    ("ParameterNotFound", False),
    ("LimitExceededException", False),  # a quota in SSM, Image Builder and IAM, not a retry
])
def test_the_error_code_travels_with_the_error(code, throttled):
    client = _ssm()
    with Stubber(client) as stub:
        stub.add_client_error("get_parameter", service_error_code=code, service_message="m")
        with pytest.raises(AwsError) as err:
            call("ssm:GetParameter", client.get_parameter, Name="/x")
    assert (err.value.code, err.value.throttled) == (code, throttled)
    assert "\n" not in err.value.format_message()


def test_throttling_beyond_the_retries_says_so_in_one_line():
    client = _ssm()
    with Stubber(client) as stub:
        stub.add_client_error("put_parameter", service_error_code="ThrottlingException",
                              service_message="Rate exceeded")
        with pytest.raises(AwsError) as err:
            call("ssm:PutParameter", client.put_parameter, Name="/x", Value="v")
    assert err.value.format_message() == (
        "AWS throttled ssm:PutParameter beyond the retry budget (ThrottlingException); "
        "try again later")
