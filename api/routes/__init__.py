"""One router per resource (module name = resource); see ``api.app.ROUTE_MODULES``."""
