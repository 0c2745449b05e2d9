"""Runnable twin pairs, written as a porting engineer writes them: stock layers on both sides (docs/byo.md)."""
