"""One blueprint per resource: health, tokens, authorizations, metrics and the OpenAPI document."""
