// StrataAgent
