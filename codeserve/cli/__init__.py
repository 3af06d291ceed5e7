"""The `codeserve` command line: the top layer, the only one that imports server, client and
loadtest together."""
