"""Cost-aware routing: pick a model per prompt to maximise predicted quality under a budget."""
