"""Small helpers with no cloudq dependencies, shared by the core and every adapter."""
