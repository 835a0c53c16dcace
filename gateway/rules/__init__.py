"""The domain rules: pure functions, no I/O, tested exhaustively."""
