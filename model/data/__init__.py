"""The synthetic DensePose data engine, and the reader of DensePose-COCO files.

| module | job |
|---|---|
| ``cache`` | the project cache directory (``.cache/`` or ``$DDP_CACHE_DIR``) |
| ``body`` | the anny body model (the only module importing anny): template mesh, posed meshes |
| ``charts`` | faces → 24 DensePose charts, U, V per face corner (cached atlas) |
| ``poses`` | joint limits, random poses, per-bone rotations |
| ``raster`` | vectorised torch z-buffer rasteriser |
| ``appearance`` | skin, hair, clothing-like colours, patterns and photo prints; light |
| ``backgrounds`` | person-free photographs as backdrops and texture patches (``BackgroundPool``) |
| ``distractors`` | shapes behind people and occluders in front of them |
| ``photometric`` | camera effects: exposure, white balance, noise, blur, JPEG, grayscale |
| ``photos`` | real photos in installed packages (``photos.json``): evaluation set, training pool |
| ``scene`` | scene sampling (people, camera, light), clip interpolation, rendering with labels |
| ``labels`` | per-person masks and boxes of label maps, ``DensePoseResult`` view for overlays |
| ``coco`` | DensePose-COCO annotations (points, ``dp_masks``, RLE) from label maps |
| ``dense`` | dense label maps as compressed ``.npz`` |
| ``synth`` | data-set generation with worker processes (``ddp synth``) |
| ``loader`` | DensePose-COCO JSON (+ dense maps) → ``DensePoseTargets`` |
| ``crowd`` | N persons at a requested foreground area (the persons benchmark, load tests) |
| ``pictures``, ``comparison`` | the pictures of ``docs/data/`` |
"""
