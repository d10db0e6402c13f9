"""Run records (the contract later tools read) and the tools that read them: compare."""
