"""OAuth 2 client logic for tools that act for a person with that person's own grant.

Pure: provider settings, the authorization request (PKCE S256, state, nonce, expiry), the code
exchange, refresh, revocation, the user's email (a verified id token or the userinfo endpoint) and
the errors a provider can cause. Nothing here stores anything or knows HTTP routes: the shared-tool
routes keep the pending authorization and the tokens (encrypted) in the store.
"""
