"""Adapters for agent frameworks (LangGraph, LangChain): the only package that imports them."""
