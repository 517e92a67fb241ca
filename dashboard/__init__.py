"""What the pages share: source pickers, cached loaders, chart builders."""
