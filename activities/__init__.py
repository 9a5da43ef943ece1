"""Activities: all I/O of a release (AWS through boto3), each safe to run twice."""
