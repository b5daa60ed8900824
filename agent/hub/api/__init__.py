"""The hub's REST API, shaped like Octopus Deploy's (routes, resources, paging, errors)."""
