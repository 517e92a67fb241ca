"""The dashboard: the app shell and what views share here, one package per view in views/."""
