"""swapstream export package."""
