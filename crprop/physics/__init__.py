"""crprop subpackage."""
