-- luacheck settings for the backplane's scripts (run `luacheck .` in this directory): Redis
-- provides `redis`, KEYS and ARGV, and scripts.rs puts prelude.lua in front of every other
-- file, whose locals they use.
std = "lua51"
read_globals = { "redis", "KEYS", "ARGV" }
files["*.lua"] = { read_globals = { "now_ms", "int", "owner", "sweep" } }
files["prelude.lua"] = { ignore = { "211" } }
