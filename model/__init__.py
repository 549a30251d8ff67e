"""flanforge.model"""
