"""swapstream training package."""
