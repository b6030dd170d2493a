"""The enrollment service: students, courses and their enrollments, and the enrollment saga."""
