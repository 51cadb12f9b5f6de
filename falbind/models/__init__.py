"""The model layer: request/response bases, the endpoint index, lazy loading of generated modules."""
