"""Speed and scale measurements. Each module prints a table and writes JSON; none is a test."""
