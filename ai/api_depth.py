from flask import Blueprint

bp = Blueprint("api_depth", __name__)
