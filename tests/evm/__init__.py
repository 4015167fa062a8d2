"""End-to-end EIP-712 tests against a Solidity verifier run in py-evm."""
