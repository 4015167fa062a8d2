"""``hokusai migrate``: bring model versions registered before the plugin into the Hokusai registry."""
