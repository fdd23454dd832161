"""Reading user data: formats, line-numbered readers and builtin sources."""
