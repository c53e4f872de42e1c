"""swapstream faces package."""
