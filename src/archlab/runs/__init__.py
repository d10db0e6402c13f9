"""Run records (the contract later tools read) and tools that read them."""
