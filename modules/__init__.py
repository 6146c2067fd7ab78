"""umvu's built-in modules (installed as the package ``umvu_modules``)."""
