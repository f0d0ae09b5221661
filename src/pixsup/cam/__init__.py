"""CAMs (workflow/rules/cam.smk): the variants, RCM and MAM losses, training, inference and CAM files."""
