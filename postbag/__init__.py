"""The operator's side of Postbag: the local stand-in for AWS, the demo and the `postbag` tool."""
