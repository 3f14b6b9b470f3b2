"""Pure wire formats: bytes in, values out. Nothing here imports Twisted or opens a socket."""
