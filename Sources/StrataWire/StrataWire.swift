// StrataWire
