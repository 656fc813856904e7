"""The dashboard's pages: each file is a page script (`st.Page`) with a `render()`."""
