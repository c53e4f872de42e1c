"""swapstream clients package."""
