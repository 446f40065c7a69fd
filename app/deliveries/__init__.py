"""Claiming, sending and recording deliveries; the RQ jobs that drive them."""
