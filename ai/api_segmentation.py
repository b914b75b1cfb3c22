from flask import Blueprint

bp = Blueprint("api_segmentation", __name__)
