"""Pure query functions: a connection in, plain Python values out."""
