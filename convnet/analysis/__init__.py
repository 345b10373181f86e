"""Analysis: counting a model (parameters, connections, MACs, depth, memory) and profiling."""
