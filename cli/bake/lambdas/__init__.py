"""AWS Lambda handlers that bake renders into its CloudFormation templates (pure stdlib + boto3)."""
