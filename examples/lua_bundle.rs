//! Prints the Lua script sluice installs in Envoy's Lua filter:
//! `cargo run --example lua_bundle > sluice.lua`.

fn main() {
    print!("{}", sluice::lua::bundle());
}
