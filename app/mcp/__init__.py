"""berth's own MCP endpoint at `/mcp`: the stateless streamable-HTTP transport and the tool rules.

`endpoint` serves an `MCPServer` on every request without the app lifespan (so under uvicorn and
under Mangum alike); `tools` holds the conventions every berth tool follows (tiers, annotations,
tool errors). Both import the MCP SDK, which costs about a second: import them only from the code
that serves `/mcp`, never from this package's `__init__`.
"""
