"""C2PA Content Credentials for the recordings swapstream writes.

Modules, in the order a recording meets them:
 - `keys`: `swapstream keys init`, a local test CA and a signing certificate for people without one.
 - `certificates`: reading a certificate chain and key, and the checks C2PA applies to a signing certificate.
 - `signer`: the signing configuration (flags / environment) and the credentials it loads, checked at start.
 - `facts`: what a recording asserts (the model, its sha256, its consent record) and the manifest made of it.
 - `sign`: signing a finished MP4 into a new file, atomically.
 - `verify`: reading a file's manifest back and judging it (`swapstream verify`).

`c2pa-python` (the `provenance` extra) is imported only where a file is signed or read, so the server and the
clients import this package without it.
"""
