"""One package per view: pages/<view>.py calls its panels; what views share is in dashboard/."""
