"""Small twin pairs written the way a user would bring their own: no zoo registry involved."""
