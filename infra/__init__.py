"""The Pulumi program: one ComponentResource per part of the system (see README.md)."""
