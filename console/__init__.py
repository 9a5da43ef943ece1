"""The relman web console: sign in through OpenID Connect, decide gates, watch and operate
releases (``relman console``)."""
