"""swapstream stream_server package."""
