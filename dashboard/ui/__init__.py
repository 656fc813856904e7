"""Pieces shared by the dashboard's pages: sign-in, banners, formatting, charts."""
